//! Pebble (Let's Encrypt's ACME test server) and pebble-challtestsrv for the ACME tests,
//! on loopback ports, stopped on drop. The binaries come from `CERTWRIGHT_PEBBLE_DIR`
//! (set by scripts/test.sh from scripts/pebble-bin.sh), else from that script's cache.
//! Pebble resolves every name through challtestsrv's DNS server on 127.0.0.1, which
//! answers 127.0.0.1 for any name (and no AAAA), so no query leaves the machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Pebble {
    /// BIND, when the options asked for it (dropped after Pebble).
    pub bind: Option<super::bind::Bind>,
    pub dir: PathBuf,
    children: Vec<Child>,
    pub directory_url: String,
    pub management_url: String,
    /// The DNS server Pebble asks (BIND when asked for, else challtestsrv): what
    /// certwright is given as its recursive nameserver, so no test asks another.
    pub dns_address: String,
    /// Pebble's HTTPS root, PEM (the issuer's caBundle).
    pub tls_root_pem: String,
    pub log: PathBuf,
    _tmp: tempfile::TempDir,
}

/// A free loopback port that no other caller in this process got.
pub fn free_port() -> u16 {
    certwright_testkube::free_port().expect("free port")
}

fn bin_dir() -> Option<PathBuf> {
    let dir = std::env::var("CERTWRIGHT_PEBBLE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/certwright-pebble/v2.10.3"));
    if dir.join("pebble").is_file() && dir.join("pebble-challtestsrv").is_file() {
        return Some(dir);
    }
    let why = format!(
        "Pebble is not built ({}); run scripts/pebble-bin.sh or set CERTWRIGHT_PEBBLE_DIR",
        dir.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} (required in CI: scripts/test.sh builds it)");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Options for one Pebble.
#[derive(Clone)]
pub struct PebbleOptions {
    /// The port Pebble validates HTTP-01 on (certwright's listener).
    pub http_port: u16,
    /// Extra environment (PEBBLE_WFE_NONCEREJECT, ...). PEBBLE_VA_NOSLEEP=1 unless
    /// `validation_sleeps`.
    pub env: Vec<(String, String)>,
    pub validation_sleeps: bool,
    /// Put BIND between Pebble and challtestsrv (for DNS-01), authoritative for this
    /// zone: Pebble asks BIND, which forwards other names to challtestsrv.
    pub bind: Option<String>,
    /// Names Pebble refuses to issue for (its domainBlocklist).
    pub blocklist: Vec<String>,
    /// External account binding required: (key id, base64url HMAC key).
    pub eab: Option<(String, String)>,
}

impl PebbleOptions {
    pub fn http(http_port: u16) -> PebbleOptions {
        PebbleOptions {
            http_port,
            env: vec![],
            validation_sleeps: false,
            bind: None,
            blocklist: vec![],
            eab: None,
        }
    }
}

impl Pebble {
    /// Starts challtestsrv and Pebble; None (test skipped) when they are not built.
    pub fn start(o: &PebbleOptions) -> Option<Pebble> {
        let bins = bin_dir()?;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dns_port = free_port();
        let dns = format!("127.0.0.1:{dns_port}");
        let log = tmp.path().join("pebble.log");
        let logf = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log")
        };
        let chall = Command::new(bins.join("pebble-challtestsrv"))
            .args([
                "-dnsserver",
                &dns,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-doh",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ])
            .stdout(logf())
            .stderr(logf())
            .spawn()
            .expect("starts pebble-challtestsrv");
        // challtestsrv goes if BIND cannot start (skipped, or a failed assertion).
        let mut chall = Reaped(Some(chall));
        let bind = match o
            .bind
            .as_deref()
            .map(|zone| super::bind::Bind::start(&dns, zone))
        {
            None => None,
            Some(Some(b)) => Some(b),
            Some(None) => return None,
        };
        let chall = chall.0.take().expect("challtestsrv");
        let pebble_dns = bind
            .as_ref()
            .map(|b| b.address())
            .unwrap_or_else(|| dns.clone());
        let (listen, mgmt) = (free_port(), free_port());
        let certs = bins.join("certs");
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": certs.join("localhost/cert.pem"),
            "privateKey": certs.join("localhost/key.pem"),
            "httpPort": o.http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": o.eab.is_some(),
            "externalAccountMACKeys": o.eab.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "domainBlocklist": o.blocklist,
            "retryAfter": {"authz": 1, "order": 1},
            "profiles": {
                "default": {"description": "90 days", "validityPeriod": 7776000},
                "shortlived": {"description": "6 days", "validityPeriod": 518400}
            }
        }});
        let cfg = tmp.path().join("pebble.json");
        std::fs::write(&cfg, config.to_string()).expect("config");
        let mut cmd = Command::new(bins.join("pebble"));
        cmd.arg("-config")
            .arg(&cfg)
            .arg("-dnsserver")
            .arg(&pebble_dns);
        if !o.validation_sleeps {
            cmd.env("PEBBLE_VA_NOSLEEP", "1");
        }
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        let pebble = cmd
            .stdout(logf())
            .stderr(logf())
            .spawn()
            .expect("starts pebble");
        let tls_root_pem =
            std::fs::read_to_string(certs.join("pebble.minica.pem")).expect("minica");
        let p = Pebble {
            dns_address: pebble_dns.clone(),
            bind,
            dir: bins,
            children: vec![chall, pebble],
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            management_url: format!("https://127.0.0.1:{mgmt}"),
            tls_root_pem,
            log,
            _tmp: tmp,
        };
        p.wait_up(listen);
        Some(p)
    }

    fn wait_up(&self, port: u16) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Pebble did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The caBundle value for Pebble's HTTPS root.
    pub fn ca_bundle(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.tls_root_pem)
    }

    /// A GET on the management interface (with curl, trusting Pebble's root).
    pub fn management(&self, path: &str) -> String {
        self.management_call(path, None)
    }

    /// A POST of a JSON body to the management interface.
    pub fn management_post(&self, path: &str, body: &serde_json::Value) -> String {
        self.management_call(path, Some(body))
    }

    fn management_call(&self, path: &str, body: Option<&serde_json::Value>) -> String {
        let root = self._tmp.path().join("minica.pem");
        std::fs::write(&root, &self.tls_root_pem).expect("root");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail", "--cacert"]).arg(&root);
        if let Some(b) = body {
            cmd.args(["-X", "POST", "--data-binary", &b.to_string()]);
        }
        let out = cmd
            .arg(format!("{}{path}", self.management_url))
            .stderr(Stdio::inherit())
            .output()
            .expect("curl");
        assert!(out.status.success(), "GET {path} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The root Pebble issues under (new at every start).
    pub fn issuing_root(&self) -> String {
        self.management("/roots/0")
    }

    /// Checks with `openssl verify` that a PEM chain file leads to the root Pebble issues
    /// under (its intermediates taken from the chain).
    pub fn assert_issued(&self, chain: &Path) {
        let root = self.tmp().join("issuing-root.pem");
        std::fs::write(&root, self.issuing_root()).expect("root");
        let out = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&root)
            .arg("-untrusted")
            .arg(chain)
            .arg(chain)
            .output()
            .expect("openssl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && text.contains(": OK"), "{text}");
    }

    pub fn tmp(&self) -> &Path {
        self._tmp.path()
    }
}

/// A child process killed when dropped (unless taken).
struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
