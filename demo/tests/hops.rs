//! The three hops as processes: the chain text, failures, and certificates swapped under
//! traffic (leaf renewals and a CA rotation) with no failed request.
//!
//! The Secret directories are written here the way a Secret volume is (a version
//! directory, then the `..data` link swapped); certwright's own writer is exercised by the
//! scenario tests in tests/.

// A test's failure is its panic, with the line that made it.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const HOST: &str = "demo-host";

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A service certificate for `svc` in namespace demo: (tls.crt, tls.key).
    fn leaf(&self, svc: &str) -> (String, String) {
        let names = vec![
            svc.to_string(),
            format!("{svc}.demo.svc"),
            format!("{svc}.demo.svc.cluster.local"),
        ];
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("{svc}.demo.svc"));
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn serial_of(pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    let s: String = c
        .tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    s.trim_start_matches('0').to_string()
}

/// Publishes a new version of a Secret directory: files into `..N`, then `..data` swapped
/// by a rename, then the old version removed (as the kubelet's atomic writer does).
fn publish(dir: &Path, files: &[(&str, &str)]) {
    static N: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir).unwrap();
    let version = format!("..v{}", N.fetch_add(1, Ordering::SeqCst));
    std::fs::create_dir(dir.join(&version)).unwrap();
    for (name, body) in files {
        std::fs::write(dir.join(&version).join(name), body).unwrap();
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(&version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

fn publish_leaf(dir: &Path, ca: &Ca, svc: &str, trust: &[&Ca]) -> String {
    let (crt, key) = ca.leaf(svc);
    let bundle: String = trust.iter().map(|c| c.pem()).collect();
    publish(
        dir,
        &[("tls.crt", &crt), ("tls.key", &key), ("ca.crt", &bundle)],
    );
    serial_of(&crt)
}

struct Hop {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Hop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(name: &str, dir: &Path, upstream: Option<(SocketAddr, &str)>) -> Hop {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certwright-demo"));
    cmd.args([
        "serve",
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--host",
        HOST,
        "--secret-dir",
    ])
    .arg(dir);
    if let Some((addr, sni)) = upstream {
        cmd.args([
            "--upstream",
            &format!("https://{addr}/"),
            "--upstream-name",
            &format!("{sni}.demo.svc"),
        ]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{name} did not start: {line:?}"));
    Hop { child, addr }
}

/// A TLS client trusting `ca`, verifying `svc.demo.svc`, over one connection.
struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    serial: String,
    /// The server said `Connection: close` (it serves a newer certificate now).
    closing: bool,
}

async fn connect(addr: SocketAddr, svc: &str, ca: &str) -> anyhow::Result<Conn> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(format!("{svc}.demo.svc"))?, tcp)
        .await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (_, cert) =
        x509_parser::parse_x509_certificate(&leaf).map_err(|e| anyhow::anyhow!("{e}"))?;
    let serial: String = cert
        .tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(Conn {
        send,
        serial: serial.trim_start_matches('0').to_string(),
        closing: false,
    })
}

impl Conn {
    async fn get(&mut self, path: &str) -> anyhow::Result<(u16, String)> {
        self.send(hyper::Method::GET, path, "").await
    }

    async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "demo")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let res = self.send.send_request(req).await?;
        let status = res.status().as_u16();
        self.closing |= res
            .headers()
            .get("connection")
            .is_some_and(|v| v == "close");
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

async fn get(addr: SocketAddr, svc: &str, ca: &str, path: &str) -> anyhow::Result<(u16, String)> {
    connect(addr, svc, ca).await?.get(path).await
}

/// Waits until a fresh handshake with `addr` presents `serial`; returns how long it took.
async fn until_served(addr: SocketAddr, svc: &str, ca: &str, serial: &str) -> Duration {
    let t = Instant::now();
    loop {
        if let Ok(c) = connect(addr, svc, ca).await {
            if c.serial == serial {
                return t.elapsed();
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{svc} never served {serial}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Scenario {
    _tmp: tempfile::TempDir,
    dirs: [PathBuf; 3],
    hops: Vec<Hop>,
}

const SVCS: [&str; 3] = ["customer", "preference", "recommendation"];

fn scenario(ca: &Ca) -> Scenario {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = SVCS.map(|s| tmp.path().join(format!("service-{s}")));
    for (d, s) in dirs.iter().zip(SVCS) {
        publish_leaf(d, ca, s, &[ca]);
    }
    let rec = start("recommendation", &dirs[2], None);
    let pref = start("preference", &dirs[1], Some((rec.addr, "recommendation")));
    let cust = start("customer", &dirs[0], Some((pref.addr, "preference")));
    Scenario {
        _tmp: tmp,
        dirs,
        hops: vec![cust, pref, rec],
    }
}

/// Requests through customer on new connections and on one kept-alive connection until
/// stopped; returns (requests, failures and the first failure).
fn load(
    addr: SocketAddr,
    ca: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let (mut n, mut failed) = (0u64, Vec::new());
        let mut kept: Option<Conn> = None;
        while !stop.load(Ordering::SeqCst) {
            let fresh = get(addr, "customer", &ca, "/").await;
            let mut conn = match kept.take() {
                Some(c) => c,
                None => match connect(addr, "customer", &ca).await {
                    Ok(c) => c,
                    Err(e) => {
                        failed.push(format!("connect: {e:#}"));
                        continue;
                    }
                },
            };
            let reused = conn.get("/").await;
            for r in [
                fresh,
                reused
                    .as_ref()
                    .map(|x| x.clone())
                    .map_err(|e| anyhow::anyhow!("{e:#}")),
            ] {
                n += 1;
                match r {
                    Ok((200, body))
                        if body.starts_with(
                            "customer => preference => recommendation v1 from 'demo-host': ",
                        ) => {}
                    Ok(other) => failed.push(format!("{other:?}")),
                    Err(e) => failed.push(format!("{e:#}")),
                }
            }
            if reused.is_ok() && !conn.closing {
                kept = Some(conn);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (n, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_answers_and_certificates_rotate_under_traffic_without_a_failure() {
    let ca1 = Ca::new("demo root 1");
    let ca2 = Ca::new("demo root 2");
    let s = scenario(&ca1);
    let (cust, pref, rec) = (s.hops[0].addr, s.hops[1].addr, s.hops[2].addr);
    let ca = ca1.pem();

    // The chain, counting at the last hop; POST goes down the chain too.
    assert_eq!(
        get(cust, "customer", &ca, "/").await.unwrap(),
        (
            200,
            format!("customer => preference => recommendation v1 from '{HOST}': 1\n")
        )
    );
    assert_eq!(
        get(cust, "customer", &ca, "/").await.unwrap().1,
        format!("customer => preference => recommendation v1 from '{HOST}': 2\n")
    );
    let mut c = connect(cust, "customer", &ca).await.unwrap();
    assert_eq!(
        c.send(hyper::Method::POST, "/", "hello").await.unwrap(),
        (
            200,
            format!("customer => preference => recommendation v1 from '{HOST}': hello\n")
        )
    );

    // A connection opened before the renewals, to check it outlives them.
    let mut early = connect(pref, "preference", &ca).await.unwrap();
    assert_eq!(early.get("/").await.unwrap().0, 200);
    let early_serial = early.serial.clone();

    let stop = Arc::new(AtomicBool::new(false));
    // The load's client trusts both CAs: the rotation below is the hops' business.
    let loader = load(cust, format!("{}{}", ca1.pem(), ca2.pem()), stop.clone());

    // Leaf renewals of every hop, one after another, each served by new handshakes.
    let mut delays = Vec::new();
    for round in 0..2 {
        for (i, svc) in SVCS.iter().enumerate() {
            let serial = publish_leaf(&s.dirs[i], &ca1, svc, &[&ca1]);
            delays.push(until_served(s.hops[i].addr, svc, &ca, &serial).await);
            eprintln!("round {round}: {svc} serves {serial}");
        }
    }
    // The old connection finishes on its old session, and is told to close.
    let (status, body) = early.get("/").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        early.closing,
        "an answer on a connection made with a replaced certificate says Connection: close"
    );
    assert_ne!(
        early_serial,
        connect(pref, "preference", &ca).await.unwrap().serial
    );

    // A CA rotation: first every hop trusts both CAs, then every leaf moves to the new CA,
    // then the old CA leaves the bundles.
    let both = format!("{}{}", ca2.pem(), ca1.pem());
    for (i, svc) in SVCS.iter().enumerate() {
        let (crt, key) = (
            std::fs::read_to_string(s.dirs[i].join("tls.crt")).unwrap(),
            std::fs::read_to_string(s.dirs[i].join("tls.key")).unwrap(),
        );
        publish(
            &s.dirs[i],
            &[("tls.crt", &crt), ("tls.key", &key), ("ca.crt", &both)],
        );
        eprintln!("{svc} trusts both CAs");
    }
    // The trust bundle is not visible in a handshake: give the hops time to read it (the
    // reload delay is measured above; 3 s is far more than any seen).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, svc) in SVCS.iter().enumerate().rev() {
        let serial = publish_leaf(&s.dirs[i], &ca2, svc, &[&ca2, &ca1]);
        delays.push(until_served(s.hops[i].addr, svc, &both, &serial).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, svc) in SVCS.iter().enumerate() {
        delays.push(Duration::ZERO);
        let serial = publish_leaf(&s.dirs[i], &ca2, svc, &[&ca2]);
        until_served(s.hops[i].addr, svc, &ca2.pem(), &serial).await;
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (n, failed) = loader.await.unwrap();
    delays.sort();
    eprintln!(
        "{n} requests, {} failed; reload delays: max {:?}, median {:?}",
        failed.len(),
        delays.last().unwrap(),
        delays[delays.len() / 2]
    );
    assert!(n > 50, "too few requests to mean anything: {n}");
    assert!(
        failed.is_empty(),
        "{} of {n} requests failed, first: {}",
        failed.len(),
        failed[0]
    );

    // Every hop now presents a certificate from the new CA only.
    let ca = ca2.pem();
    assert!(get(cust, "customer", &ca, "/")
        .await
        .unwrap()
        .1
        .starts_with("customer => preference => recommendation v1"));
    for (addr, svc) in [(pref, "preference"), (rec, "recommendation")] {
        assert_eq!(get(addr, svc, &ca, "/healthz").await.unwrap().0, 200);
        assert!(
            get(addr, svc, &ca1.pem(), "/healthz").await.is_err(),
            "{svc} still presents a certificate of the old CA"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_answer_503_with_the_prefix_and_bad_versions_are_never_served() {
    let ca1 = Ca::new("demo root");
    let mut s = scenario(&ca1);
    let (cust, pref) = (s.hops[0].addr, s.hops[1].addr);
    let ca = ca1.pem();

    // /misbehave at the last hop: 503 all the way up, each hop adding its prefix.
    let rec = s.hops[2].addr;
    assert_eq!(
        get(rec, "recommendation", &ca, "/misbehave")
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        get(cust, "customer", &ca, "/").await.unwrap(),
        (
            503,
            format!("customer => 503 preference => 503 recommendation misbehavior from '{HOST}'\n")
        )
    );
    assert_eq!(
        get(rec, "recommendation", &ca, "/behave").await.unwrap().0,
        200
    );
    assert_eq!(get(cust, "customer", &ca, "/").await.unwrap().0, 200);

    // A version whose key is not the certificate's is refused; the hop keeps serving the
    // version before it and says so in its metrics.
    let served = connect(pref, "preference", &ca).await.unwrap().serial;
    let (crt, _) = ca1.leaf("preference");
    let (_, other_key) = ca1.leaf("preference");
    publish(
        &s.dirs[1],
        &[("tls.crt", &crt), ("tls.key", &other_key), ("ca.crt", &ca)],
    );
    let t = Instant::now();
    loop {
        let (_, metrics) = get(pref, "preference", &ca, "/metrics").await.unwrap();
        if metrics.contains("certwright_demo_reloads_total{result=\"error\"} ") {
            assert!(
                metrics.contains(&format!(
                    "certwright_demo_certificate_info{{serial=\"{served}\""
                )),
                "{metrics}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the mismatched version was never read: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        connect(pref, "preference", &ca).await.unwrap().serial,
        served
    );
    assert_eq!(get(cust, "customer", &ca, "/").await.unwrap().0, 200);

    // The next hop presents a certificate for another name: refused, 503 with the reason.
    let (crt, key) = ca1.leaf("somebody-else");
    let serial = serial_of(&crt);
    publish(
        &s.dirs[2],
        &[("tls.crt", &crt), ("tls.key", &key), ("ca.crt", &ca)],
    );
    let t = Instant::now();
    let (status, body) = loop {
        let r = get(cust, "customer", &ca, "/").await.unwrap();
        if r.0 != 200 {
            break r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "recommendation never served {serial}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503);
    assert!(
        body.starts_with("customer => 503 preference => ")
            && body.contains("not valid for name \"recommendation.demo.svc\""),
        "{body}"
    );

    // The next hop presents a certificate of a CA this hop does not trust.
    let stranger = Ca::new("somebody else's root");
    publish_leaf(&s.dirs[2], &stranger, "recommendation", &[&ca1]);
    let t = Instant::now();
    loop {
        let (status, body) = get(cust, "customer", &ca, "/").await.unwrap();
        if body.contains("UnknownIssuer") {
            assert_eq!(status, 503, "{body}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "never refused: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The next hop is gone.
    s.hops.truncate(2);
    let (status, body) = get(cust, "customer", &ca, "/").await.unwrap();
    assert_eq!(status, 503);
    assert!(
        body.starts_with("customer => 503 preference => ")
            && body.to_lowercase().contains("connect"),
        "{body}"
    );
}
